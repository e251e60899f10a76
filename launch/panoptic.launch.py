"""Start panoptic_node (a lifecycle node named 'panoptic') with config/panoptic.yaml.

    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw
    ros2 launch panoptic_ros panoptic.launch.py engine:=onnxruntime device:=cuda

Arguments left empty keep the value of the parameters file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

# launch argument -> node parameter; empty values keep the parameters file's
PARAMETER_ARGUMENTS = {
    'model': 'Architecture (its bundled model) or a file stem in share/panoptic_ros/models; '
             'empty: the bundled dense_detections model.',
    'weights': 'Path of a .safetensors weights file with a model card; overrides model.',
    'engine': 'Inference engine: torch, onnxruntime or tensorrt.',
    'device': 'auto, cpu, cuda or cuda:N.',
    'input_transport': "'raw' (sensor_msgs/Image on image) or 'compressed' "
                       '(sensor_msgs/CompressedImage on image/compressed).',
}


def _node(context):
    value = {name: LaunchConfiguration(name).perform(context)
             for name in [*PARAMETER_ARGUMENTS, 'params_file', 'namespace', 'image',
                          'use_sim_time', 'autostart', 'log_level', 'large_data',
                          'dds_profile']}
    overrides = {name: value[name] for name in PARAMETER_ARGUMENTS if value[name]}
    overrides['use_sim_time'] = value['use_sim_time'].lower() == 'true'
    overrides['autostart'] = value['autostart'].lower() == 'true'
    env, warning = {}, None
    if value['large_data'].lower() == 'true':
        # Fast DDS: shared memory and TCP for big samples instead of fragmented UDP
        env['FASTDDS_BUILTIN_TRANSPORTS'] = os.environ.get('FASTDDS_BUILTIN_TRANSPORTS',
                                                           'LARGE_DATA')
    else:
        from panoptic_ros.ros.dds import node_environment

        env, warning = node_environment(value['dds_profile'])
    image = value['image']
    notes = [LogInfo(msg=f'panoptic_node: {warning}')] if warning else []
    return [*notes, LifecycleNode(
        package='panoptic_ros', executable='panoptic_node', name='panoptic',
        namespace=value['namespace'], output='screen',
        parameters=[value['params_file'], overrides],
        remappings=[('image', image), ('image/compressed', f'{image}/compressed')],
        arguments=['--ros-args', '--log-level', value['log_level']],
        additional_env=env)]


def generate_launch_description():
    share = get_package_share_directory('panoptic_ros')
    args = [DeclareLaunchArgument(name, default_value='', description=text)
            for name, text in PARAMETER_ARGUMENTS.items()]
    args += [
        DeclareLaunchArgument('image', default_value='image',
                              description='Camera image topic to segment (remaps image and '
                                          'image/compressed).'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its output topics.'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'panoptic.yaml'),
                              description='YAML file with the node parameters.'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Use /clock (bag replay) instead of the wall clock.'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='Configure and activate the lifecycle node at start; '
                                          'false leaves it unconfigured for a lifecycle '
                                          'manager.'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Logging level: debug, info, warn, error.'),
        DeclareLaunchArgument('dds_profile', default_value='default',
                              description="Fast DDS profile of the node: 'default' "
                                          '(config/fastdds_node.xml: a 64 MiB shared-memory '
                                          'segment, so that subscribers on this machine get '
                                          'every large image, best effort included), a path '
                                          "to an XML profile, or 'none'. A "
                                          'FASTDDS_DEFAULT_PROFILES_FILE or '
                                          'FASTDDS_BUILTIN_TRANSPORTS already set wins.'),
        DeclareLaunchArgument('large_data', default_value='false',
                              description='true: set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for '
                                          'the node (shared memory and TCP for large images). '
                                          'Only when the camera and every consumer set it too: '
                                          'it did not discover default-transport peers here.'),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
